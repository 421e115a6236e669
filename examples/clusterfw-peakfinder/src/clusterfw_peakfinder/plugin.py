"""Entry-point module: registers the finder with clusterfw's hook."""

from clusterfw.core.hookspecs import hookimpl


@hookimpl
def clusterfw_register_finders(register):
    """Register :class:`~clusterfw_peakfinder.finder.PeakFinder`."""
    from clusterfw_peakfinder.finder import PeakFinder

    register(PeakFinder)
