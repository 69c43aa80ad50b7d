namespace MagCds.Service.Worker;

/// <summary>
/// Wakes the worker loop early when new work is queued or a poll is asked for. It carries no state of its own: what
/// to do is in the store (queued rows, a stored poll request), so a restart loses nothing.
/// </summary>
public sealed class WorkerSignal
{
    private readonly SemaphoreSlim _wake = new(0, 1);

    public void Wake()
    {
        try { _wake.Release(); } catch (SemaphoreFullException) { } // already awake
    }

    public Task WaitAsync(TimeSpan timeout, CancellationToken ct) => _wake.WaitAsync(timeout, ct);
}
