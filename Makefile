# The two commands the README gives, plus the pieces they are made of.
.PHONY: run test infra-up infra-down infra-status cluster-up cluster-down

run:            ## set up and run the whole shop
	scripts/run.sh

test:           ## set up and run every check and test
	scripts/test.sh

infra-up:
	scripts/infra.sh up

infra-down:
	scripts/infra.sh down

infra-status:
	scripts/infra.sh status

cluster-up:
	scripts/redis-cluster.sh up

cluster-down:
	scripts/redis-cluster.sh down
