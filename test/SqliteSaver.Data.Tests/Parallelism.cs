// Only the tests of fixtures marked Parallelizable run side by side (CloseGiveUpTests, whose tests each wait 5 or
// 10 s, idle, for a Close or an Open to give up); NUnit's default of one worker per core would run them two at a time.
[assembly: LevelOfParallelism(16)]
