"""Ray Serve applications (import paths for `serve run` / `serve deploy` and KubeRay's RayService)."""
