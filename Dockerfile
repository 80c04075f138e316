# One image for web, worker and beat (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 KAMENG_ENV_FILE=""
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends gettext curl && rm -rf /var/lib/apt/lists/*
COPY requirements.lock .
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY . .
RUN useradd --system --home /app kameng && mkdir -p /app/var/media /app/staticfiles && chown -R kameng /app/var /app/staticfiles
# collectstatic needs settings but no real secrets; these throwaway values never reach runtime.
RUN SECRET_KEY=build ALLOWED_HOSTS=build EMAIL_URL=dummymail:// CARDPOOL_KEYS=1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    CARDPOOL_INDEX_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= python manage.py collectstatic --noinput
USER kameng
EXPOSE 8000
CMD ["gunicorn", "kameng.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
