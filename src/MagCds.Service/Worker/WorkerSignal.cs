namespace MagCds.Service.Worker;

/// <summary>How the notification endpoint wakes the worker: new work is queued, or a poll should run now.</summary>
public sealed class WorkerSignal
{
    private readonly SemaphoreSlim _wake = new(0, 1);
    private volatile bool _pollRequested;

    public bool TakePollRequest()
    {
        bool r = _pollRequested;
        _pollRequested = false;
        return r;
    }

    public void Wake(bool poll = false)
    {
        if (poll) _pollRequested = true;
        try { _wake.Release(); } catch (SemaphoreFullException) { } // already awake
    }

    public Task WaitAsync(TimeSpan timeout, CancellationToken ct) => _wake.WaitAsync(timeout, ct);
}
