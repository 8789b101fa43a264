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
# No SECRET_KEY here: give the Flask app's key when the container runs
# (docker run -e SECRET_KEY=...). Without one, serve exits with status 2 before
# it listens; the demo's published key is refused on 0.0.0.0.
# serve exits 0 after a graceful stop on SIGTERM (docker stop).
CMD ["flask2fastapi", "serve", "--host", "0.0.0.0", "--port", "8000", "--manifest", "/app/migration.toml"]
