FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md migration.toml ./
COPY bridge ./bridge
COPY shop ./shop
COPY legacy_flask_app ./legacy_flask_app
COPY async_app ./async_app
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["flask2fastapi", "serve", "--host", "0.0.0.0", "--port", "8000"]
