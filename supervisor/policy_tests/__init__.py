"""Policy test suites: what callers ask, as data beside the policies, run through the real supervisor.

* :mod:`.cases` — the suite files (``policies/tests/*.yaml``): schema and ``file:line`` checks;
* :mod:`.matching` — does an answer state a fact (wording, case, punctuation, "30" / "thirty");
* :mod:`.runner` — every case through ``Supervisor.decide`` against a policy set, concurrently;
* :mod:`.judge` — the model judge of rubric expectations;
* :mod:`.report` — table, JSON and JUnit XML;
* :mod:`.store` — suites versioned in Redis beside the policies;
* :mod:`.gate` — the publish gate: the candidate set against the live one;
* :mod:`.setup` — a runner wired from settings (the simulator without a key).
"""
