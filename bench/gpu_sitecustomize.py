"""Copied to .gpu-site/sitecustomize.py by ``bench/gpu.sh setup`` (the folder is first on PYTHONPATH, so Python
imports this at start-up, in torchrun's workers too). Petastorm 0.12.1 imports ``distutils``, which Python 3.12
no longer ships; setuptools (in the wheelhouse) provides it through the shim its ``.pth`` file would install in
a site-packages folder, which a PYTHONPATH folder is not."""
try:
    import distutils  # noqa: F401
except ImportError:
    try:
        import _distutils_hack

        _distutils_hack.add_shim()
    except ImportError:
        pass
