# geodrop's server image: `geodrop directory`, `geodrop fileserver --region NAME`, or the CLI.
FROM python:3.11-slim
WORKDIR /opt/geodrop
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /var/lib/geodrop --create-home geodrop \
    && install -d -o geodrop -g geodrop /var/lib/geodrop/south
USER geodrop
ENTRYPOINT ["geodrop"]
CMD ["--help"]
