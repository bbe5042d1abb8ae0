# The worker and the tools, for docker-compose.yml.
FROM python:3.11.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY personify ./personify
COPY streams ./streams
COPY processors ./processors
COPY readmodels ./readmodels
COPY schemas ./schemas
RUN pip install --no-cache-dir '.[pipeline]'
ENV PERSONIFY_WEB_HOST=0.0.0.0 \
    PERSONIFY_DATA_DIR=/var/lib/personify
EXPOSE 16066 16080
CMD ["personify", "worker"]
