"""`efakit launch`: jobs that run efa-verify at scale, one module per runtime.

job.py holds what every backend shares (the checked Job, the verifier's argv, the
start-time env step); slurm.py writes an sbatch script, eks.py a Kubeflow MPIJob for
mpi-operator, sagemaker_local.py runs SageMaker's container contract locally
through docker-compose; cli.py is the `efakit launch` command group.
"""
