# The two commands of the README, plus helpers. Everything runs from .venv, created on demand.
.PHONY: demo test unit bench bench-collector chaos lint stack-up stack-down stack-status

demo:        ## the main job: local stack + worker + simulated population + the answer
	bash scripts/demo.sh $(ARGS)

test:        ## every test (unit, integration, short chaos) against the real local stack
	bash scripts/test.sh $(ARGS)

unit:        ## the fast tier only (no servers needed)
	bash scripts/venv.sh && .venv/bin/python -m pytest tests/unit -q

chaos:       ## 20 SIGKILLs, a takeover, a broker stop and start, on the local stack (docs/chaos.md)
	PERSONIFY_CHAOS_KILLS=$${PERSONIFY_CHAOS_KILLS:-20} \
	PERSONIFY_TEST_PATHS="tests/chaos" bash scripts/test.sh -s $(ARGS)

bench:       ## the benchmarks of bench/ on the local stack
	bash scripts/venv.sh && .venv/bin/python -m bench $(ARGS)

bench-collector:  ## the HTTP collector's throughput, latency and CPU cost (docs/collector.md)
	bash scripts/venv.sh && .venv/bin/python -m bench.collector $(ARGS)

lint:
	bash scripts/venv.sh && .venv/bin/ruff check .

stack-up:
	bash scripts/venv.sh && .venv/bin/personify stack up

stack-down:
	.venv/bin/personify stack down

stack-status:
	.venv/bin/personify stack status
