# Three states: a directory, a file in it, a command; paths carry the minion id.
demo_dir:
  file.directory:
    - name: /tmp/transport-salt-test-{{ grains['id'] }}

demo_file:
  file.managed:
    - name: /tmp/transport-salt-test-{{ grains['id'] }}/hello.txt
    - contents: hello from {{ grains['id'] }}
    - require:
      - file: demo_dir

demo_cmd:
  cmd.run:
    - name: echo ran
