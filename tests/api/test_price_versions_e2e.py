"""A price set while the platform runs: announced ahead, listed as the next price, never changing a quote
already given, and kept in the offer's history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from suanli.limits import PRICE_CHANGE_NOTICE_S, PRICE_VERSION_HORIZON_DAYS
from tests.conftest import Gateway


def later(seconds: int) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def test_an_operator_sets_a_later_price_with_notice_and_history_is_kept(gateway: Gateway, unique: str) -> None:
    offer = "beta/embed"
    effective = later(PRICE_CHANGE_NOTICE_S + 3600)
    set_price = gateway.admin(
        "POST",
        f"/admin/v1/offers/{offer}/prices",
        json={"effective_from": effective, "price": {"input": "0.35", "output": "0"}, "set_by": "beta"},
    )
    assert set_price.status_code == 201, set_price.text
    key = gateway.account(unique)
    listed = httpx.get(
        f"{gateway.url}/v1/pricing", params={"model": "embed"}, headers={"Authorization": f"Bearer {key}"}
    ).json()
    (beta,) = [o for m in listed["data"] for o in m["offers"] if o["offer"] == offer]
    assert beta["current"]["prices"]["cny_per_mtok"]["input"] == "0.7"  # not yet
    assert beta["next"] is not None and beta["next"]["prices"]["cny_per_mtok"]["input"] == "0.35"
    answer = gateway.admin("GET", f"/admin/v1/offers/{offer}/prices").json()
    assert [v["prices"]["cny_per_mtok"]["input"] for v in answer["data"]] == ["0.7", "0.35"]
    assert answer["rule"] == {"notice_s": PRICE_CHANGE_NOTICE_S, "horizon_days": PRICE_VERSION_HORIZON_DAYS}
    listed_later = httpx.get(
        f"{gateway.url}/v1/pricing",
        params={"model": "embed", "at": later(PRICE_CHANGE_NOTICE_S + 7200)},
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    (after,) = [o for m in listed_later["data"] for o in m["offers"] if o["offer"] == offer]
    assert after["current"]["prices"]["cny_per_mtok"]["input"] == "0.35"


def test_a_price_change_needs_notice_and_a_known_offer(gateway: Gateway) -> None:
    soon = gateway.admin(
        "POST",
        "/admin/v1/offers/alpha/embed/prices",
        json={"effective_from": later(10), "price": {"input": "0.1", "output": "0"}},
    )
    assert soon.status_code == 400 and soon.json()["error"]["code"] == "price_change_too_soon"
    ahead = later(PRICE_CHANGE_NOTICE_S + 60)
    unknown = gateway.admin(
        "POST", "/admin/v1/offers/nobody/embed/prices", json={"effective_from": ahead, "price": {"input": "1"}}
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "offer_not_found"
    bad = gateway.admin(
        "POST", "/admin/v1/offers/alpha/embed/prices", json={"effective_from": ahead, "price": {"input": 0.1}}
    )
    assert bad.status_code == 400 and "price" in bad.json()["error"]["message"]
