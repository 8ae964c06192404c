"""Real photographs that ship inside installed packages, so notebooks, tests and
benchmarks use real images offline.

>>> from nbexplain.datasets import load_photo, PHOTOS
>>> img = load_photo("coffee")          # a PIL RGB image  # doctest: +SKIP

They come through the ``examples`` extra (``pip install 'nbexplain[examples]'``):
scikit-image and scikit-learn ship them; Grace Hopper's portrait ships with matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass

EXTRA_HINT = "pip install 'nbexplain[examples]'"


@dataclass(frozen=True)
class Photo:
    name: str
    package: str  # the package whose wheel holds the file
    loader: str  # how it is read from there
    licence: str
    description: str


PHOTOS: dict[str, Photo] = {p.name: p for p in (
    Photo("cat", "scikit-image", "skimage.data.chelsea()", "CC0, photographer Stefan van der Walt", "Chelsea the cat"),
    Photo("coffee", "scikit-image", "skimage.data.coffee()", "CC0, photographer Rachel Michetti", "a cup of coffee"),
    Photo("rocket", "scikit-image", "skimage.data.rocket()", "public domain, SpaceX", "a Falcon 9 launch"),
    Photo("astronaut", "scikit-image", "skimage.data.astronaut()", "public domain, NASA", "astronaut Eileen Collins"),
    Photo("camera", "scikit-image", "skimage.data.camera()", "CC0, photographer Lav Varshney",
          "a cameraman and his tripod (grey)"),
    Photo("motorcycle", "scikit-image", "skimage.data.stereo_motorcycle()[0]",
          "public domain, Middlebury stereo data set", "a motorcycle in a studio"),
    Photo("temple", "scikit-learn", "sklearn.datasets.load_sample_image('china.jpg')",
          "CC BY 2.0, danielbuechele", "a Chinese temple"),
    Photo("flower", "scikit-learn", "sklearn.datasets.load_sample_image('flower.jpg')",
          "CC BY 2.0, vultilion", "a flower"),
    Photo("hopper", "matplotlib", "matplotlib.cbook.get_sample_data('grace_hopper.jpg')",
          "public domain, U.S. Navy", "Commodore Grace Hopper"),
)}

#: The five photos of the README and the quick-start notebook.
README_PHOTOS = ("cat", "coffee", "rocket", "astronaut", "camera")


def load_photo(name: str):
    """Photo ``name`` (see ``PHOTOS``) as a PIL RGB image, read from the package that ships it."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; available: {sorted(PHOTOS)}")
    from PIL import Image

    try:
        array = _read(name)
    except ImportError as err:
        raise ImportError(f"photo {name!r} ships with {PHOTOS[name].package}, which is not installed: "
                          f"{EXTRA_HINT}") from err
    return Image.fromarray(array).convert("RGB")


def _read(name: str):
    if name == "hopper":
        import numpy as np
        from matplotlib import cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as img:
            return np.asarray(img.convert("RGB"))
    if name in ("temple", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image("china.jpg" if name == "temple" else "flower.jpg")
    from skimage import data

    if name == "motorcycle":
        return data.stereo_motorcycle()[0]
    return getattr(data, {"cat": "chelsea"}.get(name, name))()
