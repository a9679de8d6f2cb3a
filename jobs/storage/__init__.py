"""Keeping generated images: download a provider's URL safely, verify and re-encode the bytes, store them.

Provider URLs expire after an hour and GPT image models answer only base64, so the bytes are kept
here, in files or in the database (STORAGE_BACKEND).
"""

from jobs.storage.backends import (
    BACKENDS,
    DatabaseStorage,
    FileStorage,
    InvalidKey,
    NotStored,
    Storage,
    StoredObject,
    answer_key,
    etag_for,
    get_storage,
    image_key,
)
from jobs.storage.fetch import FetchError, FetchFailed, FetchRefused, fetch_image
from jobs.storage.images import ENCODE_QUALITY, ImageRejected, PreparedImage, prepare_image

__all__ = [
    "BACKENDS",
    "ENCODE_QUALITY",
    "DatabaseStorage",
    "FetchError",
    "FetchFailed",
    "FetchRefused",
    "FileStorage",
    "ImageRejected",
    "InvalidKey",
    "NotStored",
    "PreparedImage",
    "Storage",
    "StoredObject",
    "answer_key",
    "etag_for",
    "fetch_image",
    "get_storage",
    "image_key",
    "prepare_image",
]
