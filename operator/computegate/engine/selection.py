"""Which nodes a pod may land on: nodeSelector and required node affinity, as the scheduler reads them."""

from __future__ import annotations

from computegate.models.kube import Node, NodeSelector, NodeSelectorRequirement, PodSpec

SelectorKey = tuple[
    tuple[tuple[str, str], ...], tuple[tuple[tuple[str, str, tuple[str, ...]], ...], ...] | None
]


def _matches_requirement(requirement: NodeSelectorRequirement, labels: dict[str, str]) -> bool:
    present = requirement.key in labels
    value = labels.get(requirement.key)
    match requirement.operator:
        case "In":
            return present and value in requirement.values
        case "NotIn":
            return not present or value not in requirement.values
        case "Exists":
            return present
        case "DoesNotExist":
            return not present
        case "Gt" | "Lt":
            if not present or len(requirement.values) != 1:
                return False
            try:
                actual, bound = int(value or ""), int(requirement.values[0])
            except ValueError:
                return False
            return actual > bound if requirement.operator == "Gt" else actual < bound
    return False


def node_admitted(spec: PodSpec, node: Node) -> bool:
    labels = node.metadata.labels
    if any(labels.get(key) != value for key, value in spec.node_selector.items()):
        return False
    required = spec.required_node_selector
    return required is None or _matches_node_selector(required, node)


def _matches_node_selector(selector: NodeSelector, node: Node) -> bool:
    fields = {"metadata.name": node.metadata.name}
    # Terms are ORed; an empty term list, or a term with no requirement, matches no node.
    return any(
        (term.match_expressions or term.match_fields)
        and all(_matches_requirement(r, node.metadata.labels) for r in term.match_expressions)
        and all(_matches_requirement(r, fields) for r in term.match_fields)
        for term in selector.node_selector_terms
    )


def selector_key(spec: PodSpec) -> SelectorKey:
    """A hashable identity of the pod's placement constraints, for caching candidate models."""
    required = spec.required_node_selector
    terms = None
    if required is not None:
        terms = tuple(
            tuple(
                (("e:" if i < len(term.match_expressions) else "f:") + r.key, r.operator, tuple(r.values))
                for i, r in enumerate([*term.match_expressions, *term.match_fields])
            )
            for term in required.node_selector_terms
        )
    return tuple(sorted(spec.node_selector.items())), terms


def named_label_values(spec: PodSpec, keys: frozenset[str]) -> list[tuple[str, str]]:
    """Product-label values that the pod's selector or affinity asks for by name."""
    named = [(key, value) for key, value in spec.node_selector.items() if key in keys]
    required = spec.required_node_selector
    if required is not None:
        for term in required.node_selector_terms:
            for requirement in term.match_expressions:
                if requirement.operator == "In" and requirement.key in keys:
                    named.extend((requirement.key, value) for value in requirement.values)
    return named


# The most a pod's placement constraints may hold (nodeSelector entries, required affinity
# requirements and their values, summed): far above any real pod's, far below what would make a
# decision, or a cache entry, costly. Objects beyond it are refused, never judged or cached.
MAX_SELECTOR_SIZE = 2_000


def selector_size(spec: PodSpec) -> int:
    """How large a pod's placement constraints are, in entries and values."""
    size = len(spec.node_selector)
    required = spec.required_node_selector
    if required is not None:
        for term in required.node_selector_terms:
            size += 1
            for requirement in (*term.match_expressions, *term.match_fields):
                size += 1 + len(requirement.values)
    return size
