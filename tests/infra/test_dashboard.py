"""The operator's views of a deployed stack: the dashboard, the outputs that lead to it
and to the logs, and alarms that say what failed and which command shows more."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from infra.outputs import StackOutputs
from infra.resources import DESCRIPTION
from shared.ports import Tally
from tests.infra.conftest import STACK_NAME, Synthesized
from tests.infra.test_stack import _logical_id

pytestmark = pytest.mark.infra


def _text(value: Any) -> str:
    """A template string with its references written as ``<Ref:id>``/``<Att:id.attr>``."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return f"<Ref:{value['Ref']}>"
    if "Fn::GetAtt" in value:
        resource, attribute = value["Fn::GetAtt"]
        return f"<Att:{resource}.{attribute}>"
    separator, parts = value["Fn::Join"]
    return str(separator).join(_text(part) for part in parts)


def _widgets(synth: Synthesized) -> list[dict[str, Any]]:
    (dashboard,) = synth.template.find_resources("AWS::CloudWatch::Dashboard").values()
    body: dict[str, Any] = json.loads(_text(dashboard["Properties"]["DashboardBody"]))
    return list(body["widgets"])


def _metrics(synth: Synthesized) -> Iterator[tuple[str, list[Any]]]:
    """Each graph's title and metric rows."""
    for widget in _widgets(synth):
        if widget["type"] == "metric":
            for row in widget["properties"]["metrics"]:
                yield widget["properties"]["title"], row


def _searches(synth: Synthesized) -> set[str]:
    return {row[0]["expression"] for _, row in _metrics(synth) if "expression" in row[0]}


def test_given_the_stack_then_its_dashboard_is_named_after_it(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::CloudWatch::Dashboard", {"DashboardName": STACK_NAME}
    )


def test_given_the_dashboard_then_it_graphs_every_outcome_per_connection(
    synthesized: Synthesized,
) -> None:
    searches = _searches(synthesized)

    for tally in (Tally.APPLIED, Tally.SKIPPED, Tally.INVALID, Tally.REJECTED, Tally.FAILED):
        assert (
            f"SEARCH('{{crmsync,Connection,service}} MetricName=\"{tally}\"', 'Sum', 300)"
            in searches
        )


def test_given_the_dashboard_then_it_graphs_freshness_limits_and_calls(
    synthesized: Synthesized,
) -> None:
    searches = _searches(synthesized)

    freshness = "SEARCH('{crmsync,Connection,service} MetricName=\"Freshness\"'"
    assert f"{freshness}, 'p50', 300)" in searches
    assert f"{freshness}, 'p99', 300)" in searches
    assert "SEARCH('{crmsync,Vendor,service} MetricName=\"RateLimited\"', 'Sum', 300)" in searches
    assert "SEARCH('{crmsync,Vendor,service} MetricName=\"VendorCalls\"', 'Sum', 60)" in searches
    assert "SEARCH('{crmsync,Connection,service} MetricName=\"Deferred\"', 'Sum', 300)" in searches


def test_given_the_dashboard_then_it_graphs_drift_and_its_persistent_part_per_connection(
    synthesized: Synthesized,
) -> None:
    searches = _searches(synthesized)

    for metric in ("Drift", "DriftPersistent"):
        assert (
            f"SEARCH('{{crmsync,Connection,service}} MetricName=\"{metric}\"', 'Sum', 3600)"
            in searches
        )


def test_given_the_dashboard_then_it_graphs_the_queues_and_every_function(
    synthesized: Synthesized,
) -> None:
    stack = synthesized.stack
    graphed = {(row[0], row[1], row[3]) for _, row in _metrics(synthesized) if len(row) > 3}
    queue_name = f"<Att:{_logical_id(stack, 'Queues', 'Events')}.QueueName>"
    dlq_name = f"<Att:{_logical_id(stack, 'Queues', 'EventsDeadLetter')}.QueueName>"

    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", queue_name) in graphed
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", queue_name) in graphed
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", dlq_name) in graphed
    for function in DESCRIPTION.functions:
        name = f"<Ref:{_logical_id(stack, 'Functions', function.id)}>"
        assert ("AWS/Lambda", "Errors", name) in graphed
        assert ("AWS/Lambda", "Duration", name) in graphed


def test_given_the_stack_then_it_outputs_the_dashboard_url_and_each_functions_log_group(
    synthesized: Synthesized,
) -> None:
    outputs = {k: _text(o["Value"]) for k, o in synthesized.template_json["Outputs"].items()}

    found = StackOutputs.from_outputs(outputs)

    assert found.dashboard_url == (
        "https://<Ref:AWS::Region>.console.aws.amazon.com/cloudwatch/home"
        f"?region=<Ref:AWS::Region>#dashboards:name={STACK_NAME}"
    )
    stack = synthesized.stack
    assert (found.webhook_log_group, found.sync_log_group, found.reconcile_log_group) == tuple(
        f"<Ref:{_logical_id(stack, 'Functions', f'{function_id}Logs')}>"
        for function_id in ("Webhook", "Sync", "Reconcile")
    )


def _descriptions(synth: Synthesized) -> dict[str, str]:
    alarms = synth.template.find_resources("AWS::CloudWatch::Alarm")
    return {k: _text(a["Properties"]["AlarmDescription"]) for k, a in alarms.items()}


def _alarm(synth: Synthesized, construct_id: str) -> str:
    return _descriptions(synth)[_logical_id(synth.stack, "Monitoring", construct_id)]


def test_given_the_dead_letter_alarm_then_it_names_the_stack_the_queue_and_the_commands(
    synthesized: Synthesized,
) -> None:
    description = _alarm(synthesized, "EventsDeadLetterNotEmpty")

    dlq = _logical_id(synthesized.stack, "Queues", "EventsDeadLetter")
    assert STACK_NAME in description
    assert f"<Att:{dlq}.QueueName>" in description
    assert f"`crmsync redrive list --stack {STACK_NAME}`" in description
    assert f"`crmsync audit <record> --connection <id> --stack {STACK_NAME}`" in description


def test_given_the_age_alarm_then_it_points_to_crmsync_status(synthesized: Synthesized) -> None:
    description = _alarm(synthesized, "EventsOldestMessageAge")

    assert f"`crmsync status --stack {STACK_NAME}`" in description


def test_given_a_functions_error_alarm_then_it_names_the_functions_log_group(
    synthesized: Synthesized,
) -> None:
    for function in DESCRIPTION.functions:
        description = _alarm(synthesized, f"{function.id}Errors")

        log_group = _logical_id(synthesized.stack, "Functions", f"{function.id}Logs")
        assert f"<Ref:{log_group}>" in description
        assert function.id in description


def test_given_the_drift_alarm_then_it_watches_persistent_drift_and_points_to_crmsync_drift(
    synthesized: Synthesized,
) -> None:
    alarms = synthesized.template.find_resources("AWS::CloudWatch::Alarm")
    alarm = alarms[_logical_id(synthesized.stack, "Monitoring", "DriftPersistent")]["Properties"]

    assert (alarm["Namespace"], alarm["MetricName"], alarm["Dimensions"]) == (
        "crmsync",
        "DriftPersistent",
        [{"Name": "service", "Value": "crmsync"}],
    )
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    # Published once per check: the state holds between checks instead of clearing.
    assert alarm["TreatMissingData"] == "ignore"
    assert f"`crmsync drift --stack {STACK_NAME}`" in _alarm(synthesized, "DriftPersistent")


def test_given_every_alarm_then_its_description_fits_cloudwatchs_limit(
    synthesized: Synthesized,
) -> None:
    # AlarmDescription is at most 1024 characters; a resolved name is at most 256 here.
    for description in _descriptions(synthesized).values():
        assert len(description) + 256 <= 1024
