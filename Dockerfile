# The source-segment-profile image, in the Airbyte convention:
#   docker build -t airbyte/source-segment-profile:dev .
#   docker run --rm airbyte/source-segment-profile:dev spec
# Airbyte's own pipeline builds FROM metadata.yaml's connectorBuildOptions.baseImage instead; both
# give Python 3.11 on Debian bookworm slim, the connector installed by pip, and the non-root user
# 'airbyte' (uid 1000). unit_tests/test_distribution.py checks this file against metadata.yaml and
# runs its install steps in a fresh virtualenv.
FROM python:3.11.11-slim-bookworm

WORKDIR /airbyte/integration_code

# The build context is filtered by .dockerignore: no tests, virtualenvs or local outputs.
COPY . ./
# constraints.txt pins every dependency to the versions the tests ran with (make constraints).
RUN pip install --no-cache-dir -c constraints.txt .

# Airbyte runs connectors as uid 1000; nothing needs root once the package is installed.
RUN adduser --system --uid 1000 --group --no-create-home airbyte
USER airbyte

ENV AIRBYTE_ENTRYPOINT="source-segment-profile"
ENTRYPOINT ["source-segment-profile"]

LABEL io.airbyte.name=airbyte/source-segment-profile
LABEL io.airbyte.version=0.4.0
