"""One shape for a partition's result (issue 26 item 2): the record model's fields are the
outcome's attributes, by the same names; the log line is their JSON; the event carries a subset."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from agi_core.base.events import PartitionDone
from agi_core.executors import Outcome
from agi_core.provenance import PartitionRecord
from agi_core.provenance.lines import partition_line

_text = st.text(min_size=0, max_size=12)


@given(st.builds(
    Outcome, id=st.text(min_size=1, max_size=12), slot=_text, status=st.sampled_from(["ok", "failed", "skipped", "cached"]),
    host=_text, worker=_text, start=st.floats(0, 1e9), end=st.floats(0, 1e9), kernel=_text, device=_text,
    error=st.none() | _text, note=_text, retries=st.integers(0, 5), outputs=st.lists(_text, max_size=3).map(tuple),
    cache=st.sampled_from(["", "hit", "miss", "stored", "corrupt"]), cache_key=_text, result_location=_text, job_id=_text,
    undeclared_reads=st.lists(_text, max_size=3).map(tuple), ran_slot=_text))
def test_the_record_line_is_the_outcome_by_the_record_models_field_names(outcome):
    record = PartitionRecord.model_validate_json(partition_line(outcome))
    for name in PartitionRecord.model_fields:
        value = getattr(outcome, name)
        if name == "result_location":  # only a partition with a result says where it is (the manager's: "run result")
            value = (value or "run result") if outcome.status in ("ok", "cached") else None
        expected = list(value) if isinstance(value, tuple) else value
        got = getattr(record, name)
        # a field at its default is left out of the line, and the reader fills the default in
        assert got == expected or (not expected and got == PartitionRecord.model_fields[name].get_default(call_default_factory=True)), name


def test_the_event_of_a_partition_carries_record_fields_by_their_names():
    names = {f.name for f in dataclasses.fields(PartitionDone)}
    assert names <= set(PartitionRecord.model_fields)
    outcome = Outcome("p1", "s0", "ok", host="h", worker="w", start=1.0, end=3.5, cache="stored", job_id="4242", ran_slot="s1")
    event = PartitionDone.of(outcome)
    assert {name: getattr(event, name) for name in names} == {name: getattr(outcome, name) for name in names}
    assert event.job_id == "4242" and event.duration_s == 2.5
