"""CDK constructs and the stack of driftloop's AWS deployment (composed in ``driftloop_stack``)."""
