"""The repository's docs describe what ships: every setting and every catalog model is in
docs/settings.md, and the README links the docs."""

from pathlib import Path

from jobs import image_settings
from jobs.providers import PROVIDERS, catalog

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_and_every_model_is_documented():
    text = (ROOT / "docs" / "settings.md").read_text()
    fields = set(image_settings.DEFAULTS) | {"api_key", "is_active"}
    missing = sorted(f for f in fields if f"`{f}`" not in text)
    assert not missing, f"settings not in docs/settings.md: {missing}"
    models = [(p, m) for p in PROVIDERS for m, spec in catalog.models_for(p).items()]
    assert models
    undocumented = [f"{p}:{m}" for p, m in models if f"`{m}`" not in text]
    assert not undocumented, f"models not in docs/settings.md: {undocumented}"
    assert all(f"(`{p}`)" in text for p in PROVIDERS)


def test_the_readme_links_the_docs():
    readme = (ROOT / "README.md").read_text()
    for doc in ("docs/architecture.md", "docs/settings.md", "docs/api.md"):
        assert (ROOT / doc).exists() and f"({doc})" in readme
