"""One process of a multi-process fit: ``python distributed_fit.py PROCESS_ID N_PROCESSES PORT``.

Each process holds its own rows; the global array is built with
``jax.make_array_from_process_local_data`` and every process calls the same
``em.fit``. Prints the objective and the sorted means as JSON.
"""

import json
import sys

import jax
import numpy as np

jax.config.update("jax_cpu_collectives_implementation", "gloo")


def data():
    r = np.random.default_rng(0)
    return np.concatenate([r.normal(size=(2000, 2)), r.normal(size=(2000, 2)) + 3]).astype(
        np.float32
    )


def main(process_id: int, n_processes: int, port: int) -> None:
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=n_processes,
        process_id=process_id,
    )
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    import jaxem as em

    x = data()
    rows = np.array_split(np.arange(len(x)), n_processes)[process_id]
    mesh = Mesh(np.array(jax.devices()), ("data",))
    global_x = jax.make_array_from_process_local_data(
        NamedSharding(mesh, PartitionSpec("data")), x[rows], x.shape
    )
    model = em.Mixture(em.MultivariateNormal("full"), 2)
    res = em.fit(model, global_x, key=jax.random.key(0), restarts=4)
    means = np.sort(np.asarray(res.params.components.mean)[:, 0])
    print(json.dumps({"objective": res.objective, "means": means.tolist()}), flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
