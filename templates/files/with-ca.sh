#!/bin/sh
# efakit-with-ca CMD...: run CMD trusting the CA bundle passed as the BuildKit
# secret `ca-bundle` (corporate TLS proxies), if one was passed.  The secret is
# mounted only for the RUN step that uses it and never lands in a layer.
if [ -s /run/secrets/ca-bundle ]; then
    export PIP_CERT=/run/secrets/ca-bundle CURL_CA_BUNDLE=/run/secrets/ca-bundle \
        SSL_CERT_FILE=/run/secrets/ca-bundle REQUESTS_CA_BUNDLE=/run/secrets/ca-bundle
fi
exec "$@"
