"""A Kubernetes node whose pods really run, as processes of this machine.

The runner (``python -m odoo_devstack.podrunner``; :mod:`.runner`) registers a Node with
the local control plane and plays its kubelet: each pod bound to it gets a network
namespace on a bridge (:mod:`.network`), its volumes as folders (:mod:`.podspec`), and
its containers as local processes in private mount namespaces (:mod:`.launcher`), whose
image is played by a local runtime (:mod:`.images`); probes, restarts and the pod's
status follow the kubelet's rules (:mod:`.containers`, :mod:`.pod`), and deletion ends
with SIGTERM, the grace period, SIGKILL and the removal of the pod object.

Tests start it through the ``real_node`` fixture (:mod:`.fixtures`), or
:class:`.process.RealNodeProcess` directly.
"""
