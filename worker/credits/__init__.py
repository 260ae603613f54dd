"""Credits across all subaccounts: the monitor, low-credit alerts, runway, reconcile.

Pure decisions live in `runway`, `rule` and `drift`; `store` keeps what scans learn in Redis;
`scan`, `monitor`, `notify` and `reconcile` do the I/O; `service` is what the CLI and the console
call.
"""
