"""Section builders, in reading order. Each module exposes ``build(ctx) -> Section``.

The map is explicit: adding a section = one module + one line here.
"""

SECTION_BUILDERS = {
    "model_card": "reports.sections.model_card",
    "performance": "reports.sections.performance",
    "explanations": "reports.sections.explanations",
    "trust": "reports.sections.trust",
    "robustness": "reports.sections.robustness",
    "ood": "reports.sections.ood",
    "verification": "reports.sections.verification",
    "features": "reports.sections.features",
    "training": "reports.sections.training",
}
