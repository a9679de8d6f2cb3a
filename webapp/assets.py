"""The front-end files the pages need and nobody commits: package.json's `build` script copies them from
their npm packages into the static folder (Heroku's Node.js buildpack runs `npm ci` then that script;
`make install` runs the same two). Without them every page renders but nothing on it works — no live
progress, no inline edits — so the app refuses to start instead.

The check runs for every app, the CLI's included: on Heroku the release phase (`init-db`) runs on the built
slug, so a slug without htmx fails its release and is never deployed. It costs one stat per file, which the
test suite can pay each time it creates an app.
"""

from pathlib import Path

# Relative to the app's static folder, where templates/base.html loads them from.
REQUIRED = ("vendor/htmx.min.js",)
BUILD_COMMAND = "npm ci && npm run build"


class MissingAssets(RuntimeError):
    pass


def missing(static_folder) -> list[Path]:
    """The required files that are absent or empty (a copy that was cut short)."""
    folder = Path(static_folder)
    absent = []
    for name in REQUIRED:
        path = folder / name
        try:
            if path.stat().st_size > 0:
                continue
        except OSError:
            pass
        absent.append(path)
    return absent


def check_assets(app) -> None:
    """Raise MissingAssets naming each missing file and the command that builds it."""
    absent = missing(app.static_folder)
    if absent:
        names = ", ".join(str(path) for path in absent)
        raise MissingAssets(
            f"Front-end assets missing: {names}. Build them with `{BUILD_COMMAND}` (or `make install`) in "
            f"{Path(app.root_path).parent}; on Heroku, put the heroku/nodejs buildpack before heroku/python "
            "(app.json does).")
