"""Operations shared by the CLI and the api-shim: the one place that decides."""
