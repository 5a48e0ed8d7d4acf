# Two states run in processes of their own (parallel: True), and one that needs both.
parallel_file:
  file.managed:
    - name: /tmp/transport-salt-parallel-{{ grains['id'] }}/hello.txt
    - contents: hello from {{ grains['id'] }}
    - makedirs: True
    - parallel: True

parallel_cmd:
  cmd.run:
    - name: echo ran
    - parallel: True

after_both:
  test.succeed_without_changes:
    - require:
      - file: parallel_file
      - cmd: parallel_cmd
