# The service image: npm ci brings Node 24 (the `node` devDependency) with it.
FROM node:24-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json drizzle.config.ts ./
COPY src ./src
COPY migrations ./migrations
ENV NODE_ENV=production
EXPOSE 8080
CMD ["npm", "start"]
