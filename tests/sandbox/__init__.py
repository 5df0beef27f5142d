"""The offline sandbox: five clouds on 127.0.0.1 (see ../../../shared/design.md, "The sandbox")."""
