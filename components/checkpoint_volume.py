"""checkpoint-volume and release-checkpoint-volume: the RFT checkpoint volume of one run and arm
(see :mod:`rerec.pipeline.volumes`). A small CPU pod creates the claim and runs the Job that makes it writable for
uid 10001 (``fsGroup``, which KFP cannot give a step), and returns the claim's name for the rft step to
mount; after that step succeeded, the claim is deleted. Storage class, access mode and size come from the
ConfigMap ``rerec-checkpoints`` (manifests/overlays/cluster/params.env) as environment variables."""

from kfp import dsl

from components.image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def checkpoint_volume(
    image: str,
    arm: str = "rft",
    mount_path: str = "/mnt/checkpoints",
    node_selector: dict = {},  # noqa: B006 - KFP reads the default from the signature
    tolerations: list = [],  # noqa: B006
    kfp_run_id: str = "",
) -> str:
    from kubernetes import client, config

    from rerec.pipeline.volumes import VolumeSpec, ensure_checkpoint_volume, volume_name

    config.load_incluster_config()
    with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
        namespace = f.read().strip()
    spec = VolumeSpec.from_env(name=volume_name(kfp_run_id or "local", arm), image=image,
                               kfp_run_id=kfp_run_id or "local", mount_path=mount_path,
                               node_selector=dict(node_selector or {}), tolerations=tuple(tolerations or ()))
    return ensure_checkpoint_volume(client.CoreV1Api(), client.BatchV1Api(), namespace, spec)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def release_checkpoint_volume(pvc: str) -> None:
    from kubernetes import client, config

    from rerec.pipeline.volumes import delete_checkpoint_volume

    config.load_incluster_config()
    with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
        namespace = f.read().strip()
    delete_checkpoint_volume(client.CoreV1Api(), namespace, pvc)
    print(f"checkpoint volume {pvc} deleted")
