# Every target creates .venv and installs what it needs: nothing installed by hand is assumed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install demo test bench soak clean proxy

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,loadtest,metrics]'
	touch $@

install: $(VENV)/.installed

certs/hostcert.pem: | $(VENV)/.installed
	$(BIN)/tornado-certs --dir certs

# A fresh proxy on every demo start: a proxy from an earlier day would have expired.
proxy: certs/hostcert.pem
	$(BIN)/tornado-proxy-init --cert certs/usercert.pem --key certs/userkey.pem --out certs/proxy.pem --group dirac_user

demo: $(VENV)/.installed proxy
	@echo
	@echo "Demo server on https://localhost:8443 -- in another shell:"
	@echo "  export X509_CERT_DIR=$(CURDIR)/certs/certificates X509_USER_PROXY=$(CURDIR)/certs/proxy.pem DIRACSYSCONFIG=$(CURDIR)/cs/dirac.cfg"
	@echo "  $(BIN)/tornado-rpc Framework/Dummy ping"
	@echo "  $(BIN)/tornado-rpc Framework/Dummy add 2 3"
	@echo "  $(PY) -c \"import TornadoServices; TornadoServices.initialize(); from TornadoServices.Client.TornadoClient import TornadoClient; print(TornadoClient('Framework/Dummy').whoami())\""
	@echo "  $(BIN)/multimech-run multimechanize/ping"
	@echo
	$(BIN)/tornado-start-all --cfg cs/dirac.cfg

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(PY) -m benchmarks.run

# A few minutes of mixed load on a multi-process server: calls, errors and memory over time (not part of `make test`).
SOAK_ARGS ?= --minutes 3
soak: $(VENV)/.installed
	$(PY) -m tests.faults.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) certs/*.pem certs/certificates
