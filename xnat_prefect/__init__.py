"""xnat-prefect: XNAT operations as retryable, observable Prefect tasks and flows.

The core (``models``, ``client``, ``services``, ``dicom``) never imports Prefect; the Prefect
layer lives in ``tasks``, ``xnat_prefect.flows`` and ``xnat_prefect.blocks``. The XNAT emulator
used to test all of it is ``xnat_prefect.testing``.
"""

__version__ = "0.1.0"
