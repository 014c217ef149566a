"""``latentsync-routes prices ...``: the price book, refreshed from a provider's own pricing API.

``prices refresh`` asks fal's Platform API for the unit price of ``fal-ai/latentsync`` and writes it to the
user's override of the price book (``$LATENTSYNC_ROUTES_HOME/prices.json``) with its source and date; the
estimators and the cost records read it from then on. Replicate and WaveSpeed publish no pricing API the
package uses: their prices stay the packaged ones, each with its source and date.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.text import Text

from ._common import ConfigOpt, JsonOpt, _client, _emit, _errors, app, out

prices_app = typer.Typer(no_args_is_help=True, help="The price book: refresh prices from a provider's pricing API.")
app.add_typer(prices_app, name="prices")


@prices_app.command("refresh")
def prices_refresh(as_json: bool = JsonOpt, config: Path | None = ConfigOpt) -> None:
    """Fetch fal's unit price for fal-ai/latentsync and write it, dated and sourced, to your price-book override."""
    from ..errors import ConfigurationError
    from ..pricing import price_book
    from ..routes.fal.platform import PLATFORM_URL, refresh_price_book
    from ..routes.fal.route import ENDPOINT

    with _errors(as_json):
        route: Any = _client(config).route("fal")
        if route.sandbox():  # a fake's or a test gateway's price must not become the real price book's
            raise ConfigurationError(
                "prices refresh writes fal's real price into your price book, but LATENTSYNC_ROUTES_FAL_BASE_URL "
                f"points fal at {route.base_url()}: unset it to refresh from fal itself",
                route="fal",
            )
        why_not = route.availability()
        if why_not:
            raise ConfigurationError(why_not, route="fal")
        name = route.credential.name if route.credential is not None else "FAL_KEY"
        written = refresh_price_book(route.secret(), route.base_url() or PLATFORM_URL, ENDPOINT, credential_name=name)
        kept = {r: {"source": e["source"], "checked": e["checked"]} for r, e in price_book().items() if r != "fal"}
        summary = {"refreshed": [written], "unchanged": kept}

        def human() -> None:
            out.print(
                Text(
                    f"fal {ENDPOINT}: {written['billable_unit_price']} {written['currency']} per "
                    f"{written['billable_unit']} (checked {written['checked']})"
                )
            )
            out.print(Text(f"source: {written['source']}"))
            out.print(f"written to {escape(written['override'])}")
            for other, entry in kept.items():
                out.print(Text(f"{other}: unchanged (no pricing API; {entry['source']}, checked {entry['checked']})"))

        _emit(as_json, summary, human)
