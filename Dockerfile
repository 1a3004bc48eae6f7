# geodrop's server image: `geodrop directory`, `geodrop fileserver --region NAME`, or the CLI.

# The web client's one npm dependency (tus-js-client), at the version web/package-lock.json pins.
FROM node:20-slim AS web
WORKDIR /build
COPY web/package.json web/package-lock.json ./web/
RUN npm ci --prefix web --no-audit --no-fund --loglevel=error

FROM python:3.11-slim
WORKDIR /opt/geodrop
COPY pyproject.toml README.md ./
COPY src ./src
COPY --from=web /build/web/node_modules/tus-js-client/dist/tus.min.js ./src/geodrop/directory/static/tus.min.js
COPY --from=web /build/web/node_modules/tus-js-client/LICENSE ./src/geodrop/directory/static/tus-js-client-LICENSE.txt
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /var/lib/geodrop --create-home geodrop \
    && install -d -o geodrop -g geodrop /var/lib/geodrop/south
USER geodrop
ENTRYPOINT ["geodrop"]
CMD ["--help"]
