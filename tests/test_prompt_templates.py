"""Prompt templates of the CoOp family (clipwb.trainers.kit.templates)."""
from clipwb.trainers.kit.templates import (CUSTOM_TEMPLATES, DEFAULT_TEMPLATE, IMAGENET_TEMPLATES,
                                IMAGENET_TEMPLATES_SELECT, PROMPTSRC_TEMPLATES, custom_template,
                                ensemble_templates, fill_template)


def test_template_lists():
    assert len(IMAGENET_TEMPLATES) == len(set(IMAGENET_TEMPLATES)) == 80
    assert len(PROMPTSRC_TEMPLATES) == 60 and set(PROMPTSRC_TEMPLATES) <= set(IMAGENET_TEMPLATES)
    assert PROMPTSRC_TEMPLATES[0] == "a photo of a {}."
    assert len(IMAGENET_TEMPLATES_SELECT) == 7
    assert all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES + list(CUSTOM_TEMPLATES.values()))
    assert len(CUSTOM_TEMPLATES) == 15


def test_dataset_templates():
    assert custom_template("EuroSAT") == "a centered satellite photo of {}."
    assert custom_template("PACS") == DEFAULT_TEMPLATE  # datasets without a CoOp template
    assert ensemble_templates("ImageNet") == IMAGENET_TEMPLATES_SELECT
    dtd = ensemble_templates("DescribableTextures")
    assert len(dtd) == 8 and dtd[-1] == "{} texture."
    assert len(IMAGENET_TEMPLATES_SELECT) == 7  # not mutated by the call above
    assert fill_template("a photo of a {}, a type of pet.", "great_pyrenees") == \
        "a photo of a great pyrenees, a type of pet."
