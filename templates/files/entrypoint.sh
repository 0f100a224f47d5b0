#!/bin/sh
# efakit-entrypoint: apply the instance-specific env rules (efa-verify env reads
# the same rules table the image was rendered from and detects the instance),
# generate ssh host keys on first start, then run the command.
if command -v efa-verify >/dev/null 2>&1; then
    if changes=$(efa-verify env --shell); then
        eval "$changes"
    else
        echo "efakit: start-time env step failed; keeping the image's environment" >&2
    fi
fi
if command -v ssh-keygen >/dev/null 2>&1 && ! ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1; then
    ssh-keygen -A >/dev/null 2>&1 || echo "efakit: could not generate ssh host keys" >&2
fi
# A SageMaker verification job (efakit sagemaker-verify sets the variable): `train`,
# or no command as some launchers pass, runs the verifier's SageMaker mode.
# Without the variable `train` is the SageMaker training toolkit, for users' jobs.
if [ "${EFAKIT_SAGEMAKER_VERIFY:-0}" = 1 ] && { [ $# -eq 0 ] || [ "$1" = train ]; }; then
    exec efa-verify sagemaker
fi
exec "$@"
