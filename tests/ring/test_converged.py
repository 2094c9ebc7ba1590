import pytest

from ring.config import RingConfig
from ring.converged import install_converged_tables
from ring.messages import NodeRef
from ring.routing import RoutingTable

from .helpers import build_ring


def test_installed_tables_equal_what_joins_and_stabilization_converge_to():
    joined = build_ring(40, seed=4)
    refs = joined.ring_order()
    tables = [RoutingTable(joined.space, r, joined.config.r) for r in refs]
    install_converged_tables(tables, refs)
    for ref, t in zip(refs, tables):
        live = joined.nodes[ref.addr].table
        assert t.successors == live.successors
        assert t.predecessor == live.predecessor
        for i in range(t.first_finger_index(), joined.space.bits):
            assert t.finger(i) == live.finger(i)


def test_unsorted_or_mismatched_input_is_refused():
    space = RingConfig().space
    refs = [NodeRef(5, "a"), NodeRef(3, "b")]
    tables = [RoutingTable(space, r, 8) for r in refs]
    with pytest.raises(ValueError, match="sorted"):
        install_converged_tables(tables, refs)
    with pytest.raises(ValueError, match="one table per node"):
        install_converged_tables(tables[:1], refs)
