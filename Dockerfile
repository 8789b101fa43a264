FROM python:3.11-slim
# The toolkit is installed from /src; the wheel holds the bridge package alone.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip install --no-cache-dir . && rm -rf /src
# The demo is not installed: it runs from /app, the folder of its manifest,
# which flask2fastapi puts on sys.path (as `flask --app` does the current folder).
WORKDIR /app
COPY migration.toml ./
COPY shop ./shop
COPY legacy_flask_app ./legacy_flask_app
COPY async_app ./async_app
EXPOSE 8000
CMD ["flask2fastapi", "serve", "--host", "0.0.0.0", "--port", "8000", "--manifest", "/app/migration.toml"]
