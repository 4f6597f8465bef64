"""Builds pouw's optional native parts (pouw/_native/: the fused kernel, SHAKE-256 streams);
metadata is in pyproject.toml.

The extension is optional: if the compiler or OpenMP is missing the build goes on without it
and pouw mines with the torch path (pouw.native.available() says which).
"""

from __future__ import annotations

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pouw._native._fused",
            sources=["pouw/_native/fused.c"],
            extra_compile_args=["-O3", "-fopenmp", "-std=c11"],
            extra_link_args=["-fopenmp"],
            optional=True,
        ),
        # the verifier's SHAKE-256 streams in one call (pouw.hashing falls back to hashlib)
        Extension(
            "pouw._native._shake",
            sources=["pouw/_native/shake.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wno-psabi"],
            optional=True,
        ),
    ]
)
