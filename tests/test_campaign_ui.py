"""The campaign tab and results as built: catalog texts, Japanese, contract ids and APIs, no names in the config."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from arena.campaigns.service import DEMO_BUNDLE, CampaignService, install_bundle
from arena.storage import Store
from arena.storage.campaigns import CampaignStore
from arena.ui.app import build_page
from tests.support.services import make_service, tgi_spec
from tests.test_ui import _visible_texts

CAMPAIGN_IDS = ["campaign_chat_a", "campaign_chat_b", "campaign_vote_a", "campaign_vote_b", "campaign_vote_tie"]
CAMPAIGN_IDS += ["campaign_vote_bothbad", "campaign_reason", "campaign_next", "campaign_reveal", "campaign_task"]
CAMPAIGN_IDS += ["campaign_language"]
CAMPAIGN_APIS = {"campaign_next", "campaign_vote_a", "campaign_vote_b", "campaign_vote_tie", "campaign_vote_bothbad"}
CAMPAIGN_APIS |= {"campaign_results"}


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[gr.Blocks, Any]]:
    store = Store(f"sqlite:///{tmp_path / 'arena.sqlite3'}")
    service = make_service([tgi_spec(n, "http://127.0.0.1:9") for n in ("alpha", "beta")], store)
    install_bundle(CampaignStore(store), DEMO_BUNDLE)
    campaigns = CampaignService(service, CampaignStore(store))

    async def build() -> tuple[gr.Blocks, Any]:
        return build_page(service, campaigns)

    yield asyncio.run(build())
    store.dispose()


def test_every_campaign_text_comes_from_a_catalog_key_and_switches_to_japanese(page: tuple[gr.Blocks, Any]) -> None:
    demo, texts = page
    visible = [(b, p, v) for b, p, v in _visible_texts(demo) if str(b.elem_id or "").startswith("campaign")]
    assert len(visible) > 12
    assert [(b.elem_id, p, v) for b, p, v in visible if (b._id, p) not in texts.bound()] == []
    updates = texts.updates("ja")
    for block, prop, english in visible:
        update = updates[block]
        value = update.get(prop) if isinstance(update, dict) else update
        if english not in ("Model A", "Model B"):  # the same words in Japanese's catalog
            assert value != english, (block.elem_id, prop)


def test_campaign_ids_and_endpoints(page: tuple[gr.Blocks, Any]) -> None:
    demo, _ = page
    ids = [b.elem_id for b in demo.blocks.values() if getattr(b, "elem_id", None)]
    assert len(ids) == len(set(ids))
    assert [i for i in CAMPAIGN_IDS if i not in ids] == []
    names = {fn.api_name for fn in demo.fns.values() if fn.api_name}
    assert names >= CAMPAIGN_APIS
    info = demo.get_api_info()["named_endpoints"]
    assert [p["parameter_name"] for p in info["/campaign_vote_a"]["parameters"]] == ["reason"]
    assert [p["parameter_name"] for p in info["/campaign_next"]["parameters"]] == ["campaign_id", "language"]


def test_the_page_config_names_no_candidate(page: tuple[gr.Blocks, Any]) -> None:
    demo, _ = page
    config = str(demo.get_config_file()).lower()
    assert not [n for n in ("aurora", "borealis", "cirrus", "dune") if n in config]
