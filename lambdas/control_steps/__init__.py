"""The drift-decision Lambdas (see ``handlers``)."""
