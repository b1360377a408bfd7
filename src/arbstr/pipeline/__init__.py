"""The request path, one stage per module, imports in one direction (ADR 0010):

`context` (what a request carries, and the per-process `Shared` wiring) <- `admit` (decode the
view, plan the route, and every request-wide check as an ordered admission step) <- `attempts`
(the attempt loop) <- `finish` (record, cost, savings, headers; once for both answers) <-
`json` and `stream` (the two answer paths). `arbstr.gateway.Gateway` wires them.
"""
