from django.contrib.auth.hashers import PBKDF2PasswordHasher


class QueryPasswordHasher(PBKDF2PasswordHasher):
    """PBKDF2 for buyers' order query passwords.

    Django's default 1,000,000 rounds, paid by every checkout, would cap a 2-core shop at a
    handful of orders a second in a flash sale (docs/performance.md). A query password guards
    one order page behind a per-IP rate limit, so a lighter work factor is the right trade here.
    """

    algorithm = "pbkdf2_sha256_query"
    iterations = 60_000
