import io
from decimal import Decimal

import pytest
from PIL import Image

from jobs.providers import PROVIDERS, get_provider
from jobs.providers.base import Credentials, ImageProvider, ImageRequest, ProviderError
from jobs.providers.catalog import PRESETS, SizeRule
from jobs.providers.placeholder import PlaceholderProvider

PROVIDER = PlaceholderProvider()


def make_request(prompt="a lighthouse at dusk", size=(1536, 1024)):
    return ImageRequest(prompt, "placeholder-v1", *size)


def picture(image) -> Image.Image:
    return Image.open(io.BytesIO(image.data))


@pytest.mark.parametrize("size", [(1024, 1024), (1536, 864), (864, 1536), (1536, 800)])
def test_it_renders_a_png_at_the_requested_size(size):
    image = PROVIDER.generate(make_request(size=size), Credentials(None), timeout=(1, 1))
    assert (picture(image).format, picture(image).size) == ("PNG", size)
    assert image.url is None and image.cost == Decimal("0")


def test_the_same_prompt_and_size_give_the_same_bytes():
    first = PROVIDER.generate(make_request(), Credentials(None), timeout=(1, 1))
    second = PlaceholderProvider().generate(make_request(), Credentials(None), timeout=(1, 1))
    assert first.data == second.data


def test_another_prompt_gets_another_background():
    one = picture(PROVIDER.generate(make_request("a cat"), Credentials(None), timeout=(1, 1)))
    other = picture(PROVIDER.generate(make_request("a dog"), Credentials(None), timeout=(1, 1)))
    assert one.getpixel((5, 5)) != other.getpixel((5, 5))


def test_it_needs_no_key_and_costs_nothing():
    assert PROVIDER.requires_api_key is False
    assert PROVIDER.estimate_cost(make_request()) == Decimal("0")
    assert PROVIDER.generate(make_request(), None, timeout=(1, 1)).data


class MeasuringFont:
    """Pillow's font, counting the text it is asked to measure (how the wrap's work is bounded)."""

    def __init__(self, font):
        self.font, self.size, self.measured = font, font.size, 0

    def getlength(self, text):
        self.measured += len(text)
        return self.font.getlength(text)


def test_the_longest_prompt_costs_no_more_text_measuring_than_what_fits():
    # Without a bound, wrapping a 32,000-character prompt measures millions of characters (seconds).
    from jobs.providers.placeholder import _font, _wrap

    measured = {}
    for prompt in ("a lighthouse at dusk " * 40, "word " * 6000, "x" * 32000):
        font = MeasuringFont(_font(40))
        lines = _wrap(prompt, font, 1400, 6)
        assert 1 <= len(lines) <= 6
        measured[len(prompt)] = font.measured
    assert max(measured.values()) < 50_000, measured
    assert PROVIDER.generate(make_request("x" * 32000), None).data  # and the image is made


def test_it_refuses_a_size_it_does_not_offer():
    with pytest.raises(ProviderError, match="1000x1000: width and height must be multiples of 16") as caught:
        PROVIDER.generate(ImageRequest("a cat", "placeholder-v1", 1000, 1000), None)
    assert caught.value.permanent


def test_the_registry_holds_each_provider_by_its_name():
    assert set(PROVIDERS) == {"placeholder", "openai", "runware", "openai_compatible"}
    for name, provider in PROVIDERS.items():
        assert isinstance(provider, ImageProvider) and provider.name == name and get_provider(name) is provider
        for spec in provider.models.values():
            assert isinstance(spec.size_rule, SizeRule)
            # every preset of every model is a size the model's own rule accepts
            assert all(spec.size_rule.problem(*spec.size_rule.preset(p)) is None for p in PRESETS)


def test_an_unknown_provider_is_a_permanent_readable_error():
    with pytest.raises(ProviderError) as caught:
        get_provider("midjourney")
    assert caught.value.permanent
    assert caught.value.message == ("Unknown image provider 'midjourney'; choose one of: placeholder, openai, runware, "
                                    "openai_compatible.")
