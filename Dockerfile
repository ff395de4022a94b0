# Build stage: src/ compiled to dist/ (`npm run build`), with the dev dependencies tsc needs.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
RUN npm run build

# The service image: dist/, the migrations it applies at start, and the production dependencies.
FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY --from=build /app/dist ./dist
COPY migrations ./migrations
# dist/ is built and tsc is not here: npm start, db:migrate and keys skip their pre-scripts (the build).
ENV NPM_CONFIG_IGNORE_SCRIPTS=true
EXPOSE 8080
CMD ["npm", "start"]
