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
# sshd's privilege separation directory: enroot mounts a tmpfs on /run over the image's.
[ -d /run/sshd ] || mkdir -p /run/sshd 2>/dev/null || true
# The image carries no ssh key.  A runtime that cannot mount one (SageMaker: efakit
# sagemaker-verify passes a per-job key) hands it over in EFAKIT_SSH_KEY; it is
# installed for root and taken out of the environment, so mpirun -x EFAKIT_* never
# forwards it.  mpi-operator mounts its Secret on /root/.ssh instead.
if [ -n "${EFAKIT_SSH_KEY:-}" ] && [ ! -e /root/.ssh/id_ed25519 ]; then
    (umask 077 && mkdir -p /root/.ssh \
        && printf '%s\n' "$EFAKIT_SSH_KEY" > /root/.ssh/id_ed25519 \
        && ssh-keygen -y -f /root/.ssh/id_ed25519 > /root/.ssh/authorized_keys) \
        || echo "efakit: could not install the job's ssh key (EFAKIT_SSH_KEY)" >&2
fi
unset EFAKIT_SSH_KEY
# A SageMaker verification job (efakit sagemaker-verify sets the variable): `train`,
# or no command as some launchers pass, runs the verifier's SageMaker mode.
# Without the variable `train` is the SageMaker training toolkit, for users' jobs.
if [ "${EFAKIT_SAGEMAKER_VERIFY:-0}" = 1 ] && { [ $# -eq 0 ] || [ "$1" = train ]; }; then
    exec efa-verify sagemaker
fi
exec "$@"
