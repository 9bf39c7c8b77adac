"""The admission webhook and operator: the engine's adapter to a live cluster.

The rule of this package: it translates, it does not decide. Wire objects (AdmissionReviews,
watch events) become models and a ``ClusterState``; ``computegate.engine`` makes every
decision; what goes back (a response, annotations, an Event, a log line, a metric, a license
status) is derived from that one ``Verdict``. Kopf decorators live only in ``handlers`` and
only register; everything is wired in ``operator`` (read it top to bottom). Nothing here
imports the dev cluster, the demo or the CLI.
"""
