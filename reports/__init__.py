"""xaiscope's reporting layer: report tree, figures, HTML, summary JSON, CLI and notebook display."""

__all__: list = []
