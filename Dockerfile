# Build stage: src/ compiled to dist/ (`npm run build`), with the dev dependencies tsc needs.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
RUN npm run build

# The service image: dist/, the migrations, the production dependencies, tini, and no build tools.
FROM node:24-bookworm-slim
# tini as PID 1 forwards SIGTERM to node (which drains; see SHUTDOWN_TIMEOUT_MS) and reaps zombies.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY migrations ./migrations
# dist/ is built and tsc is not here: `npm run db:migrate` and `npm run keys` skip their pre-scripts (the build).
ENV NPM_CONFIG_IGNORE_SCRIPTS=true
# A worker (ROLE=worker) answers /healthz and /readyz here; the API on PORT (8080).
ENV WORKER_HEALTH_PORT=8081
EXPOSE 8080 8081
# The code stays root's and read-only to the process; node (uid 1000) is the image's own unprivileged user.
USER node
# /readyz on the port this container's ROLE answers on (dist/cli/healthcheck.js); the image has no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["node", "dist/cli/healthcheck.js"]
ENTRYPOINT ["/usr/bin/tini", "--"]
# node directly (not npm, which would not forward signals), with src/runtime-flags.ts's PARLEY_NODE_FLAGS.
CMD ["node", "--max-semi-space-size=16", "--heap-growing-percent=30", "dist/main.js"]
