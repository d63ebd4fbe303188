"""``crmsync mapping validate|preview`` and ``crmsync items``.

``validate`` needs no stack. ``preview`` and ``items`` run against a local stack with
its sandboxes (HubSpot → QuickBooks, the services preset) whose functions are
stand-ins: nothing syncs on its own, so whatever the vendors, tables and queue hold
afterwards is what the commands left there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.cli import main
from local.runtime import LocalStack
from local.sandboxes.hubspot import DEAL_TO_CONTACT, LINE_ITEM_TO_DEAL, HubSpotPerson
from local.sandboxes.quickbooks import QuickBooksSandbox
from shared.models import ObjectType, RecordLink
from shared.stores import DynamoLinkStore
from tests.integration.test_local_runtime import StandIns, free_config

PRESET = Path(__file__).resolve().parents[2] / "config" / "hubspot" / "services.yaml"
MISSING = "Gold Plating"  # no QuickBooks item has this name
AMY = "1"  # a seeded QuickBooks customer: Amy's Bird Sanctuary, Birds@Intuit.com


# --- validate ------------------------------------------------------------------------------


def test_given_a_preset_when_validated_then_ok_with_what_it_maps(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["mapping", "validate", str(PRESET)]) == 0

    out = capsys.readouterr().out
    assert "ok" in out and "source hubspot" in out
    assert "deal: 7 fields, 2 filter rule(s), line items: 7 fields" in out


def test_given_a_broken_file_when_validated_then_each_problem_at_its_place_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "version: 1\nobjects:\n  contact:\n    fields:\n"
        "      display_name: {from: name, required: true}\n"
        "      emial: {from: email}\n",
        encoding="utf-8",
    )
    bad_transform = tmp_path / "transform.yaml"
    bad_transform.write_text(
        "version: 1\nobjects:\n  contact:\n    fields:\n"
        "      display_name: {from: name, transforms: [frobnicate]}\n",
        encoding="utf-8",
    )

    assert main(["mapping", "validate", str(broken), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert main(["mapping", "validate", str(bad_transform)]) == 1
    err = capsys.readouterr().err

    assert report["valid"] is False
    assert [p for p in report["problems"] if "objects.contact.fields.emial" in p]
    assert "unknown canonical field 'emial'" in report["problems"][0]
    assert "objects.contact.fields.display_name.transforms[0]" in err
    assert "unknown" in err and "frobnicate" in err


def test_given_a_preset_of_another_crm_when_validated_for_a_pair_then_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["mapping", "validate", str(PRESET), "--crm", "salesforce", "--accounting", "xero"])

    assert code == 1
    assert "written for source 'hubspot'" in capsys.readouterr().err


# --- preview and items, on a local stack ------------------------------------------------------


class World:
    def __init__(self, stack: LocalStack, config_file: Path) -> None:
        self.stack = stack
        self.config_file = config_file
        self.quickbooks: QuickBooksSandbox = stack.sandboxes["quickbooks"]
        hubspot = HubSpotPerson(stack.sandboxes["hubspot"], stack.urls.sandboxes["hubspot"])
        self.linked = hubspot.create(
            "contacts", {"firstname": "Ada", "lastname": "Byron", "email": "ada@example.test"}
        )
        self.new = hubspot.create(
            "contacts", {"firstname": "Bea", "lastname": "Lovelace", "email": "bea@example.test"}
        )
        self.deal = hubspot.create(
            "deals",
            {
                "dealname": "Gilded birdhouse",
                "pipeline": "default",
                "dealstage": "closedwon",
                "closedate": "2026-11-20T15:00:00Z",
            },
            to=[(self.new, DEAL_TO_CONTACT)],
        )
        for name, price in (("Design", "75"), (MISSING, "40")):
            hubspot.create(
                "line_items",
                {"name": name, "quantity": "2", "price": price},
                to=[(self.deal, LINE_ITEM_TO_DEAL)],
            )
        # As if a sync had written the first contact to Amy's customer before.
        DynamoLinkStore(stack.clients.dynamodb, stack.resources.tables["Links"]).save(
            RecordLink(
                connection_id="demo",
                source="hubspot",
                source_type=ObjectType.CONTACT,
                source_id=self.linked,
                target="quickbooks",
                target_type=ObjectType.CUSTOMER,
                target_id=AMY,
                source_version=1,
                content_hash="an older content",
            )
        )

    def run(self, *args: str) -> int:
        return main([*args, "--connection", "demo", "--local", "--config", str(self.config_file)])

    def state(self) -> dict[str, Any]:
        """Everything a write would change: the books, the tables, the queue."""
        clients, resources = self.stack.clients, self.stack.resources
        tables = {
            name: clients.dynamodb.scan(TableName=resources.tables[name])["Items"]
            for name in ("Links", "Audit")
        }
        queue = clients.sqs.get_queue_attributes(
            QueueUrl=resources.queues["Events"].url, AttributeNames=["All"]
        )["Attributes"]
        books = {
            entity: self.quickbooks.entities(entity) for entity in ("Customer", "Item", "Invoice")
        }
        counts = {
            key: queue[key]
            for key in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
        }
        return {"tables": tables, "queue": counts, "books": books}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    config = free_config(reconcile_interval_s=3600)
    with LocalStack(config, handlers=StandIns().handlers()) as stack:
        path = tmp_path_factory.mktemp("mapping") / "local.yaml"
        stack.running_config.write(path)
        yield World(stack, path)


def previews(world: World, capsys: pytest.CaptureFixture[str], *args: str) -> list[Any]:
    assert world.run("mapping", "preview", *args, "--json") == 0
    found: list[Any] = json.loads(capsys.readouterr().out)
    return found


def test_given_a_linked_contact_when_previewed_then_the_diff_against_its_customer(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    before = world.state()

    (preview,) = previews(world, capsys, "--object", "contact", "--record", world.linked)

    assert preview["action"] == "update"
    assert preview["target_key"] == f"quickbooks:customer:{AMY}"
    changes = {c["path"]: (c["current"], c["proposed"]) for c in preview["changes"]}
    assert changes["DisplayName"] == ("Amy's Bird Sanctuary", "Ada Byron")
    assert changes["PrimaryEmailAddr.Address"] == ("Birds@Intuit.com", "ada@example.test")
    assert world.state() == before, "a preview wrote something"


def test_given_a_new_contact_when_previewed_then_the_customer_it_would_create(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    before = world.state()

    (preview,) = previews(world, capsys, "--object", "contact", "--record", world.new)

    assert preview["action"] == "create" and preview["changes"] == []
    assert preview["payload"]["DisplayName"] == "Bea Lovelace"
    assert preview["payload"]["PrimaryEmailAddr"] == {"Address": "bea@example.test"}
    assert world.state() == before


def test_given_a_deal_selling_a_missing_item_when_previewed_then_invalid_naming_the_setting(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    (preview,) = previews(world, capsys, "--record", world.deal)

    assert preview["action"] == "invalid"
    assert MISSING in preview["reason"] and "items.create_missing" in preview["reason"]


def test_given_a_mapping_that_creates_items_when_previewed_then_the_invoice_and_the_new_item(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    creating = tmp_path / "creating.yaml"
    creating.write_text(
        PRESET.read_text(encoding="utf-8") + "items: {create_missing: true, income_account: '1'}\n",
        encoding="utf-8",
    )
    before = world.state()

    (preview,) = previews(world, capsys, "--record", world.deal, "--mapping", str(creating))

    assert preview["action"] == "create"
    assert preview["new_items"] == [MISSING]
    lines = [line for line in preview["payload"]["Line"] if "SalesItemLineDetail" in line]
    refs = [line["SalesItemLineDetail"]["ItemRef"]["value"] for line in lines]
    assert refs[1] == f"(new item {MISSING})" and refs[0] != refs[1]
    assert world.state() == before, "a preview created the item, the customer or the invoice"


def test_given_a_table_preview_then_it_says_nothing_was_written(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert world.run("mapping", "preview", "--object", "contact", "--limit", "10") == 0

    out = capsys.readouterr().out
    assert "nothing was written" in out
    assert "DisplayName" in out and "Ada Byron" in out  # the linked contact's diff


def test_given_deals_selling_a_product_without_item_then_items_lists_it(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    before = world.state()

    assert world.run("items", "--json") == 0

    missing = json.loads(capsys.readouterr().out)
    assert [item["name"] for item in missing] == [MISSING]
    assert missing[0]["deals"] == [f"hubspot:deal:{world.deal}"]
    assert world.state() == before


def test_given_an_unknown_connection_then_exit_1_naming_the_known_ones(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["items", "--connection", "nope", "--local", "--config", str(world.config_file)])

    assert code == 1
    assert "no connection 'nope'" in capsys.readouterr().err
