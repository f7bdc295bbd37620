"""HTTP side of the service: Powertools resolvers, routers, request signatures, error mapping."""
