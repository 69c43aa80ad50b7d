using MagCds.Service.Worker;

namespace MagCds.Tests.Worker;

/// <summary>
/// Whether an <c>$events</c> answer recovered a whole gap. The FHIR test server has no <c>$events</c> (so the
/// end-to-end tests take the catch-up poll path); this is the rule that decides between the two for servers that do.
/// </summary>
public class EventRecoveryTests
{
    [TestCase(new long[] { 5, 6, 7 }, 5, 7, true)]
    [TestCase(new long[] { 7, 5, 6, 6 }, 5, 7, true)]
    [TestCase(new long[] { 4, 5, 6, 7, 8 }, 5, 7, true)]
    [TestCase(new long[] { 6, 7 }, 5, 7, false)]   // the server no longer keeps event 5
    [TestCase(new long[] { 5, 7 }, 5, 7, false)]
    [TestCase(new long[] { }, 5, 5, false)]
    [TestCase(new long[] { 4, 8 }, 5, 7, false)]
    public void An_events_answer_clears_a_gap_only_when_it_holds_every_missed_number(long[] numbers, long from, long to, bool covered) =>
        Assert.That(EventRecovery.Covers(numbers, from, to), Is.EqualTo(covered));
}
