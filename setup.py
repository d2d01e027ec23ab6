"""Packaging for beam_pipelines: one import package, Beam pinned to 2.77.x."""

import setuptools

REQUIRED = [
    'aiohttp>=3.9,<4',
    'croniter>=2,<8',
    'cryptography>=42,<51',
    'apache-beam[gcp,aws]>=2.77.0,<2.78.0',
    'fastavro>=1.9,<2',
    'numpy>=1.26,<3',
    'openlineage-python>=1.30,<2',
    'orjson>=3.9,<4',
    'paho-mqtt>=2.1,<3',
    'prometheus-client>=0.20,<1',
    'psycopg2-binary>=2.9,<3',
    'pyarrow>=14,<26',
    'pyyaml>=6,<7',
    'pydantic>=2.5,<3',
    'redis[hiredis]>=5,<9',
    'scipy>=1.11,<2',
    'tqdm>=4.66,<5',
]

TEST = [
    'aiosmtpd>=1.4,<2',
    'hypothesis>=6.100,<7',
    'moto[server]>=5,<6',
    'pillow>=10,<13',
    'pytest>=8,<10',
    'pytest-xdist>=3.5,<4',
    'ruff>=0.6,<1',
    'schemathesis>=4,<5',
    'selenium>=4.20,<5',
]

setuptools.setup(
    name='beam_pipelines',
    version='0.1.0',
    description='Unified batch and streaming event pipelines on Apache Beam, Arrow-first.',
    python_requires='>=3.10',
    packages=setuptools.find_packages(include=['beam_pipelines', 'beam_pipelines.*']),
    install_requires=REQUIRED,
    extras_require={'test': TEST, 'fuzz': ['atheris>=2.3,<4']},
)
